"""Building blocks of the classic architectures, each naming its paper."""
__all__ = []
