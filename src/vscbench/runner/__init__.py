"""Runner stage: items x model x calibration -> responses committed one by one to the store."""
