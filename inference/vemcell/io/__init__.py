"""Reading and writing volumes: TIFF, folders of slices, MRC and Zarr, with their voxel size."""
