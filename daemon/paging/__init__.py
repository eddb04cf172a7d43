"""Paging: ladder notifications to pagers and DECT handsets over ESPA 4.4.4, delivery tracked."""
