"""The dashboard's static files (index.html, app.js, style.css), served by `runtime/http_ui.py`."""
