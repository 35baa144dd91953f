from django.shortcuts import redirect


def home(request):
    """The site root: the portal (which sends anonymous visitors to its login page)."""
    return redirect("portal:overview")
