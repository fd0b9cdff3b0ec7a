"""Datasets behind one small interface; nothing here downloads."""
