"""``kseg report``: one table of every experiment under ``runs/`` (``table``) and its HTML page (``html``)."""
