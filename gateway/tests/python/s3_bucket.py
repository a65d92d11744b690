"""Fills a moto S3 server for the S3 dataset test: an IAM user whose keys the engine reads from
a shared-credentials file (moto checks signatures once its first unauthenticated actions are
spent: INITIAL_NO_AUTH_ACTION_COUNT=3 on the server), a bucket with one tenant's orders as a
Parquet file and the other's as a folder of two, and a credentials file with a wrong secret.

  python3 s3_bucket.py ENDPOINT DIR   # writes DIR/credentials and DIR/wrong-credentials
"""
import pathlib
import sys

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

endpoint, out = sys.argv[1], pathlib.Path(sys.argv[2])
setup = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
# The three unauthenticated actions: the user, its key, its policy.
iam = boto3.client("iam", **setup)
iam.create_user(UserName="engine")
key = iam.create_access_key(UserName="engine")["AccessKey"]
iam.put_user_policy(
    UserName="engine",
    PolicyName="s3",
    PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
)
ids, secret = key["AccessKeyId"], key["SecretAccessKey"]
(out / "credentials").write_text(f"[default]\naws_access_key_id = {ids}\naws_secret_access_key = {secret}\n")
(out / "wrong-credentials").write_text(f"[default]\naws_access_key_id = {ids}\naws_secret_access_key = not-{secret}\n")

s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ids, aws_secret_access_key=secret)
s3.create_bucket(Bucket="portcullis-data")


def orders(tenant, first, count):
    table = pa.table({
        "order_id": pa.array(range(first, first + count), pa.int64()),
        "tenant": [tenant] * count,
        "amount": [float(i % 97) for i in range(count)],
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


s3.put_object(Bucket="portcullis-data", Key="acme/orders.parquet", Body=orders("acme", 1, 1000))
s3.put_object(Bucket="portcullis-data", Key="globex/orders/part-0.parquet", Body=orders("globex", 5001, 300))
s3.put_object(Bucket="portcullis-data", Key="globex/orders/part-1.parquet", Body=orders("globex", 5301, 200))
print("ok")
