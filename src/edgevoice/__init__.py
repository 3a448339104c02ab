"""edgevoice: an on-device speech stack for voice assistants."""
__version__ = "0.1.0"
