"""The envelope model's training recipe: data, pairs, training, export.

Uses torch (the ``train`` extra); nothing under ``src/genrestore`` imports it.
"""
