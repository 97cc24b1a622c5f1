"""Built-in behaviour, registered as ordinary plugins (see ``ddcore.plugins.BUILTIN_PLUGINS``)."""
