"""A machine-readable catalog: DCAT 3 as JSON-LD (datasets as ``dcat:Dataset`` with a parquet
distribution, a csvw table schema and a DQV quality measurement; views as ``dcat:DataService``
serving the datasets whose tables they read)."""

from __future__ import annotations

import json

from workbench.catalog.models import Dataset, View, holder_schema
from workbench.catalog.store import Catalog

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "csvw": "http://www.w3.org/ns/csvw#",
    "dqv": "http://www.w3.org/ns/dqv#",
    "spdx": "http://spdx.org/rdf/terms#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "wb": "urn:workbench:",
}


def _column(col) -> dict:
    return {"@type": "csvw:Column", "csvw:name": col.name, "csvw:datatype": col.type,
            "dct:description": col.description, "wb:sensitivity": col.sensitivity}


def _dataset(space_uri: str, ds: Dataset) -> dict:
    return {
        "@id": f"{space_uri}dataset/{ds.id}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds.id,
        "dct:title": ds.title,
        "dct:description": ds.description,
        "dct:publisher": {"@id": f"{space_uri}holder/{ds.holder}", "@type": "foaf:Agent",
                          "foaf:name": ds.holder},
        "dct:source": ds.source,
        "dct:issued": {"@value": ds.created_at.isoformat(), "@type": "xsd:dateTime"},
        "dcat:version": ds.version,
        "dcat:keyword": list(ds.tags),
        "dct:rights": ds.usage_terms,
        "wb:logicalTable": ds.table,
        "wb:rows": ds.rows,
        "dcat:distribution": {
            "@type": "dcat:Distribution",
            "dcat:mediaType": "application/vnd.apache.parquet",
            "dct:title": f"holders/{ds.holder}/{ds.file}",
            "spdx:checksum": {"@type": "spdx:Checksum", "spdx:algorithm": "sha256",
                              "spdx:checksumValue": ds.version},
            "dct:accessRights": "restricted: readable only by the space's data gateway",
        },
        "csvw:tableSchema": {"@type": "csvw:Schema",
                             "csvw:column": [_column(c) for c in ds.columns]},
        "dqv:hasQualityMeasurement": {
            "@type": "dqv:QualityMeasurement",
            "dqv:isMeasurementOf": {"@id": "wb:overallQualityScore"},
            "dqv:value": {"@value": ds.quality_score, "@type": "xsd:double"},
        },
    }


def _view(space_uri: str, view: View, catalog: Catalog) -> dict:
    served = [f"{space_uri}dataset/{d.id}" for t in view.tables for d in catalog.holders_of(t)]
    return {
        "@id": f"{space_uri}view/{view.id}",
        "@type": "dcat:DataService",
        "dct:identifier": view.id,
        "dct:title": view.title,
        "dct:description": view.description,
        "dcat:servesDataset": [{"@id": uri} for uri in served],
        "dct:accessRights": "granted per study; rows leave only through the data gateway",
        "wb:minimumRows": view.min_rows,
        "wb:datePolicy": view.date_policy,
        "csvw:tableSchema": {"@type": "csvw:Schema",
                             "csvw:column": [_column(c) for c in view.columns]},
    }


def export(catalog: Catalog, space_id: str, title: str = "Workbench data space") -> dict:
    uri = f"urn:workbench:space:{space_id}:"
    holders = sorted({d.holder for d in catalog.datasets.values()})
    return {
        "@context": CONTEXT,
        "@id": f"{uri}catalog",
        "@type": "dcat:Catalog",
        "dct:title": title,
        "dct:publisher": [{"@id": f"{uri}holder/{h}", "@type": "foaf:Agent", "foaf:name": h,
                           "wb:schema": holder_schema(h)} for h in holders],
        "dcat:dataset": [_dataset(uri, d) for _, d in sorted(catalog.datasets.items())],
        "dcat:service": [_view(uri, v, catalog) for _, v in sorted(catalog.views.items())],
    }


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
