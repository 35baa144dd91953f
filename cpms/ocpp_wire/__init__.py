"""The OCPP wire, without the server: typed values in, checked calls out.

Importable by the domain apps (they build the calls they send) and by the server (cpms.ocpp, which
validates what chargers send with the same schemas). Nothing here touches Django's ORM, the channel layer
or a domain app.

- calls: `Call` (action + payload) and `call_checked`, the one schema check every builder ends with;
- actions / schemas: what a CSMS may send per version, and the official JSON schemas compiled;
- one builder per (action, version): operations (start, stop, reset, configuration...), auth (reservations,
  local lists), firmware (updates, log uploads), smart_charging (charging profiles), costs (running cost),
  display (messages on the charger's display);
- templates: configuration templates of bulk jobs as calls; redaction: the secrets a call may carry.
"""
