"""Notebook front door: the %deploy magic and the ipywidgets deployment panel."""
