"""Training code for genrestore's small learned model (bandwidth-extension envelope and band gains).

This package lives beside ``src/genrestore`` and is never imported by the installed package:
:mod:`training.data` builds the training set of real full-band music from Debian packages.
"""
