"""A transfer cancelled while awscrt's signer reads its body leaves no traceback behind.

botocore signs with the CRT when awscrt is installed (a FluxForge dependency: CRC32C), and
over plain HTTP the signer reads the body to hash it; a cancelled transfer's body raises
CancelledError there, which awscrt prints through sys.excepthook.  `fluxforge sync` cancels
its transfers on a run-ending error (sync/upload.py): the journal must show the one-line
error, not a traceback per cut read.  Real awscrt signing, no mock.
"""
import sys
from concurrent.futures import CancelledError

from awscrt import http
from awscrt.auth import AwsCredentialsProvider, AwsSigningAlgorithm, AwsSigningConfig, aws_sign_request

from fluxforge.sync.upload import _cancelled_reads_unprinted


class _Body:
    """A request body whose reads raise `error` (as s3transfer's reader does once cancelled)."""

    def __init__(self, error: Exception):
        self.error = error

    def read(self, n):
        raise self.error

    def seek(self, offset, whence=0):
        return 0


def _sign_with_body(error: Exception) -> None:
    request = http.HttpRequest("PUT", "/fleet/key", http.HttpHeaders([("host", "127.0.0.1")]), body_stream=_Body(error))
    config = AwsSigningConfig(algorithm=AwsSigningAlgorithm.V4, region="us-east-1", service="s3",
                              credentials_provider=AwsCredentialsProvider.new_static("AKIA", "secret"))
    assert aws_sign_request(request, config).exception(10) is not None  # the signing failed on the read


def test_awscrt_prints_a_cancelled_read_unless_quieted(capsys):
    _sign_with_body(CancelledError())
    assert "CancelledError" in capsys.readouterr().err  # what the journal showed before
    before = sys.excepthook
    with _cancelled_reads_unprinted():
        _sign_with_body(CancelledError())
        _sign_with_body(ValueError("a real fault"))
    err = capsys.readouterr().err
    assert "CancelledError" not in err and "Traceback" in err and "ValueError: a real fault" in err, err
    assert sys.excepthook is before
