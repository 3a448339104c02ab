"""Errors a user can cause. Each names the thing that is wrong and how to fix it."""


class EdgevoiceError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class AudioError(EdgevoiceError):
    """Unreadable, empty or otherwise unusable audio."""


class TemplateError(EdgevoiceError):
    """A template file that cannot be parsed or expands to nothing."""


class VoiceError(EdgevoiceError):
    """An unknown voice id or an unusable voice specification."""


class EngineMissingError(EdgevoiceError):
    """A TTS engine (program) is not installed."""


class ManifestError(EdgevoiceError):
    """A manifest line that does not follow the schema."""


class ConfigError(EdgevoiceError):
    """An invalid configuration value."""


class ModelError(EdgevoiceError):
    """A model directory that is missing, corrupt, or does not match what loads it."""


class LatticeError(EdgevoiceError):
    """A lattice that cannot be decoded: bad magic, version, checksum or structure."""
