"""What the app's pages show, computed without streamlit: maps, overlays, lineage, lessons, uploads."""
