"""cdk-nag's AWS Solutions checks (v3: a policy-validation plugin that fails synthesis)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from stacks.nag import flatten

from .conftest import Synthesized


def test_app_has_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    report = synthesized.report()
    findings = [
        f"{v['ruleName']} ({v['severity']}) at {[c['constructPath'] for c in v['violatingConstructs']]}"
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
    ]
    assert synthesized.error is None and not findings, "\n".join(findings) or synthesized.error


def test_the_plugin_does_fail_synthesis(tmp_path: pytest.TempPathFactory) -> None:
    # guards the test above against a plugin that silently checks nothing
    app = cdk.App(outdir=str(tmp_path))
    s3.Bucket(cdk.Stack(app, "Careless"), "Open")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_flatten_matches_cdk_nag_finding_ids() -> None:
    arn = {"Fn::Join": ["", [{"Fn::ImportValue": "MlopsData:ExportsOutputX"}, "/incoming/*"]]}
    assert flatten(arn) == "MlopsData:ExportsOutputX/incoming/*"
    assert flatten({"Fn::Join": ["", [{"Fn::GetAtt": ["Fn1", "Arn"]}, ":*"]]}) == "<Fn1.Arn>:*"
    assert flatten({"Fn::Sub": "arn:${AWS::Partition}:s3:::b/*"}) == "arn:<AWS::Partition>:s3:::b/*"
    assert flatten({"Ref": "Bucket"}) == "<Bucket>"
