"""Monitoring of served traffic: the prediction log writer, its route and gauges."""
