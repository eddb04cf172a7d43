"""The scanner's DICOM receiver: association, spool, parser pool, dose extraction and checks."""
