"""The HTTP service (FastAPI) over the Predictor. Run: `uvicorn arginator.serving.api.app:app`."""
