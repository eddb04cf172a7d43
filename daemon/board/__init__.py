"""The suite board: a live web page for the nurse station and engineers (``suitemon board``).

The board is an ordinary MQTT client of the published contract (docs/mqtt.md): it reads
retained status, alarm records and device states, derives what a person at the station
needs to see, and pushes it to browsers by Server-Sent Events. People act through it as
themselves: each login opens an MQTT connection with that person's broker credentials,
so the broker checks the password and its ACL ties the command topic to the user.

Modules: ``config`` (the ``[board]`` section), ``model`` (MQTT topics -> the page's
view), ``web`` (aiohttp app: errors, headers, Host allow-list), ``listener`` (socket with a connection
cap), ``sse`` (the push hub), ``throttle`` (login lockout),
``sessions`` (logins, cookies, CSRF), ``userlink`` (one broker connection per login),
``server`` (wiring and routes), ``cli`` (the sub-command). Assets live in ``static/``.
"""
