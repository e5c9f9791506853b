"""The session services answer for real: PostGIS computes, moto stores, the registry assigns ids."""

import boto3
import psycopg


def test_postgis_is_available(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        area = conn.execute(
            "SELECT ST_Area(ST_GeomFromText('POLYGON((0 0,2 0,2 2,0 2,0 0))'))").fetchone()[0]
    assert area == 4.0


def test_moto_s3_round_trip(moto_endpoint):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="geoflux-test")
    s3.put_object(Bucket="geoflux-test", Key="jobs/1/inputs.json", Body=b'{"a": 1}')
    body = s3.get_object(Bucket="geoflux-test", Key="jobs/1/inputs.json")["Body"].read()
    assert body == b'{"a": 1}'
