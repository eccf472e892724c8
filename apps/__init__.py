"""The Streamlit explorer over the embedding store and the ``make demo`` driver."""
