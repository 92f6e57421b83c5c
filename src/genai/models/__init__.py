"""Transitional: the GPT lives here until it moves to genai/gpt."""
