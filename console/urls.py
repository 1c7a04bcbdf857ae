"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path

from console.views import (
    approvals,
    audience,
    audit,
    campaign_actions,
    campaigns,
    create,
    dashboard,
    evidence,
    gates,
    notices,
    reports,
    signin,
    two_factor,
    wording,
)

app_name = "console"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("campaigns/", campaigns.campaign_list, name="campaigns"),
    path("campaigns/new/", create.campaign_new, name="campaign_new"),
    path("campaigns/new/count/", audience.audience_count, name="audience_count"),
    path("campaigns/<int:pk>/", campaigns.campaign_page, name="campaign"),
    path("campaigns/<int:pk>/edit/", create.campaign_change, name="campaign_edit"),
    path("campaigns/<int:pk>/progress/", campaigns.campaign_progress, name="campaign_progress"),
    path("campaigns/<int:pk>/evidence/", evidence.evidence_packs, name="evidence"),
    path(
        "campaigns/<int:pk>/evidence/progress/",
        evidence.evidence_progress,
        name="evidence_progress",
    ),
    path(
        "campaigns/<int:pk>/evidence/request/", evidence.evidence_request, name="evidence_request"
    ),
    path("evidence/<int:pack_id>/retry/", evidence.evidence_retry, name="evidence_retry"),
    path("evidence/<int:pack_id>/download/", evidence.evidence_download, name="evidence_download"),
    path(
        "campaigns/<int:pk>/wording-test.csv",
        wording.wording_download,
        name="campaign_wording_download",
    ),
    path("login/", signin.login, name="login"),
    path("login/verify/", signin.login_verify, name="login_verify"),
    path("logout/", signin.logout, name="logout"),
    path("account/two-factor/", two_factor.two_factor, name="two_factor"),
    path(
        "campaigns/<int:pk>/act/<slug:action>/",
        campaign_actions.campaign_act,
        name="campaign_act",
    ),
    path("approvals/", approvals.approval_inbox, name="approvals"),
    path("approvals/<int:pk>/", approvals.approval_detail, name="approval"),
    path(
        "approvals/<int:pk>/preview/<str:locale>/",
        approvals.approval_preview,
        name="approval_preview",
    ),
    path("notices/", notices.notice_list, name="notices"),
    path("notices/<int:notice>/diff/", notices.notice_diff, name="notice_diff"),
    path("gates/", gates.gate_list, name="gates"),
    path("gates/new/", gates.gate_new, name="gate_new"),
    path("gates/<int:pk>/", gates.gate_page, name="gate"),
    path("gates/<int:pk>/edit/", gates.gate_edit, name="gate_edit"),
    path("gates/<int:pk>/act/<slug:action>/", gates.gate_act, name="gate_act"),
    path("audit/", audit.audit_trail, name="audit"),
    path("audit/download.csv", audit.audit_download, name="audit_download"),
    path("reports/effectiveness/", reports.effectiveness, name="effectiveness"),
    path("reports/effectiveness/print/", reports.effectiveness_print, name="effectiveness_print"),
    path("reports/effectiveness.csv", reports.effectiveness_csv, name="effectiveness_csv"),
]
