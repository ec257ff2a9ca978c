"""The shop owner's web panel: the layer above `backend` (nothing below imports it).

Server-rendered pages (Starlette and Jinja2), right to left in Persian with an English
switch, charts drawn on the server as SVG. See docs/panel.md.
"""
