"""Operator and site-host pages about sites and stations: the network overview (live), station list and
station detail with its commands, message log, command history and configuration."""

from django.http import HttpRequest
from django.shortcuts import render

from cpms.portal import portal_view
from stations.selectors import network_overview


@portal_view
def overview(request: HttpRequest):
    """Stations by site with their live status; the page subscribes to the live-status websocket."""
    return render(request, "stations/overview.html", {"overview": network_overview(user=request.user)})
