"""spinedecomp: open software for non-surgical spinal decompression therapy."""

__version__ = "0.1.0"
