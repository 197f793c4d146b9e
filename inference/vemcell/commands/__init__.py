"""One module per ``vemcell`` sub-command; each is a thin wrapper over library functions."""
