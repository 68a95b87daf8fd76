"""OpenAI's Uploads API: a large file sent in parts, assembled into a normal File."""
