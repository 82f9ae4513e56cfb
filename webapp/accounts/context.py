from webapp.accounts.roles import ROLES, has_role, highest_role


def roles(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_role": None, "can": {}}
    return {"user_role": highest_role(user), "can": {r: has_role(user, r) for r in ROLES}}
