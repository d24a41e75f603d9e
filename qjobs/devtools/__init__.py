"""Local development and test helpers: the Firestore emulator, a local QStash stand-in."""
