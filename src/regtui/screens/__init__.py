"""regtui's screens, one per file; dialogs are ``ModalScreen``s returning through ``dismiss``."""
