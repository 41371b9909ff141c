"""Getting media from providers and keeping it.

``http`` fetches a URL (allowlist, safe redirects, credentials, answer checks), ``twilio`` knows Twilio's URLs
and "not ready yet", ``providers`` picks between the two for a recording; ``store`` is the store protocol, with
``local`` (a directory) and ``s3`` (a bucket) implementing it.
"""
