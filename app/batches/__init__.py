"""OpenAI's Batch API: a JSONL file of requests run in the background through ftgw's own inference, the answers
written to an output file (and the failures to an error file)."""
