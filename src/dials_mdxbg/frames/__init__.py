"""Experiments -> frames + mask: imageset selection, validation, dxtbx mask rules."""
