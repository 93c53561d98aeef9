"""S3's refusals and misses as errors that name the bucket and key and say what to do.

botocore reports a missing bucket, a missing object, a refused signature or absent
credentials as `ClientError("An error occurred (404) when calling the HeadObject operation")`
or `NoCredentialsError`, naming neither the bucket nor the key. The store, the file listings
of sources and the WebDataset shard reader all go through `s3_errors`, so each such failure
reads `s3://bucket/key: ...` and keeps botocore's error as its cause.

A missing bucket is not a missing file: `S3BucketNotFoundError` is a `LookupError`, so code
that waits for a file to appear (`FileNotFoundError`: "not yet") does not wait forever on a
misspelt bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

MISSING_KEY_CODES = ("NoSuchKey", "404", "NotFound")
MISSING_BUCKET_CODES = ("NoSuchBucket",)
DENIED_CODES = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden")


class S3AccessError(PermissionError):
    """S3 refused a request: wrong or absent credentials, or no permission (names bucket and
    key)."""


class S3BucketNotFoundError(LookupError):
    """The bucket itself does not exist (names it)."""


def error_code(error: BaseException) -> str | None:
    """S3's error code of a botocore `ClientError`, or of the `ClientError` that boto3's
    transfer manager raised its own error from; None for any other error.

    >>> error_code(ValueError("not S3")) is None
    True
    """
    cause = error if isinstance(error, ClientError) else error.__context__
    if not isinstance(cause, ClientError):
        return None
    return str(cause.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def s3_errors(
    what: str, bucket: str, key: str = "", missing: type[Exception] = FileNotFoundError
) -> Iterator[None]:
    """Re-raise S3 failures inside the block as errors naming `s3://bucket/key`: a refusal or
    no credentials as `S3AccessError`, a missing bucket as `S3BucketNotFoundError`, a missing
    object as `missing`; anything else unchanged.

    >>> with s3_errors("a read", "ml", "raw/a.xml"):  # doctest: +SKIP
    ...     client.get_object(Bucket="ml", Key="raw/a.xml")
    Traceback (most recent call last):
    FileNotFoundError: s3://ml/raw/a.xml: not found
    """
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise S3AccessError(
            f"{where}: {what} needs S3 credentials and found none ({error}); set the access "
            "key and secret of the S3 resource (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        ) from error
    except Exception as error:
        code = error_code(error)
        if code is None:
            raise
        if code in DENIED_CODES:
            raise S3AccessError(
                f"{where}: S3 refused {what} ({code}); check the access key, secret and "
                "the bucket policy"
            ) from error
        if code in MISSING_BUCKET_CODES:
            raise S3BucketNotFoundError(
                f"s3://{bucket}: no such bucket ({what} of {where}); check the bucket name and "
                "the endpoint"
            ) from error
        if code in MISSING_KEY_CODES:
            raise missing(f"{where}: not found") from error
        raise
