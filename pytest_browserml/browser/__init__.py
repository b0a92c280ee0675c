"""The browser side: provisioning, launching, the local server, the page and its channel."""
