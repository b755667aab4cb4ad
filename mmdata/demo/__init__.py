"""`mmdata demo`: the generated corpus and random detector weights (data), the local
web server (webserver) and web corpus (web), and the oracle corpus (oracle)."""
