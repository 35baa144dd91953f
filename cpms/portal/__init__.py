"""The portal: the pages people use in a browser, over every domain app. An interface layer like the API
and the OCPP server: it calls the apps' selectors and services; no domain app imports it."""
