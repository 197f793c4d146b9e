"""The add-on's user interface: properties, preferences, operators and the sidebar panel."""

from . import ops, panel, pref, props

# Registration order matters: property groups before the operators and panels using them.
CLASSES = (*props.CLASSES, *pref.CLASSES, *ops.CLASSES, *panel.CLASSES)
