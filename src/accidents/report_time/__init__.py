"""The report-time model (issue #25): one accident as BAAC records it, every user and vehicle, no outcome."""
