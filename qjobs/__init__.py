"""The job pipeline shared by every QStash-delivered job of this service."""
