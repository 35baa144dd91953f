from django.shortcuts import render


def home(request):
    """Portal placeholder until the portal issue: links to what exists today."""
    return render(request, "home.html")
