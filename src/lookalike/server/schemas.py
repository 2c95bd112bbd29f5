"""What the HTTP API accepts and answers: query parameters, upload forms and response models.

Responses name files only by base name and folder name (:func:`display_name`, :func:`folder_name`),
never by path.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from lookalike.text import display_name
from lookalike.vectors import MetricName, Mode

MAX_K = 1000
INT64_MAX = 2**63 - 1  # ids and seeds are 64-bit: larger values are refused (422), not a 500

HELP = {"k": "Number of results.", "mode": "nearest first, farthest first, or a random sample.",
        "metric": "cosine (1 - cosine similarity) or l2 (Euclidean).",
        "seed": "Seed for mode=random [default: a fresh one, returned as seed].",
        "exclude_self": "Leave out indexed files with the query's exact bytes.",
        "threshold": "A dedup preset (exact, near, similar, shots) or a cosine distance."}
K = Annotated[int, Query(ge=1, le=MAX_K, description=HELP["k"])]
ModeQ = Annotated[Mode, Query(description=HELP["mode"])]
MetricQ = Annotated[MetricName, Query(description=HELP["metric"])]
SeedQ = Annotated[int | None, Query(ge=0, le=INT64_MAX, description=HELP["seed"])]
IdQ = Annotated[int, Query(ge=-INT64_MAX - 1, le=INT64_MAX, description="Id of an indexed image.")]
IdP = Annotated[int, PathParam(ge=-INT64_MAX - 1, le=INT64_MAX, description="Id of an indexed image.")]
ExcludeQ = Annotated[bool, Query(description=HELP["exclude_self"])]
ThresholdQ = Annotated[str, Query(description=HELP["threshold"])]


class _UploadForm(BaseModel):
    """A multipart body: the image in ``file``; options may come as form fields too (each once: in
    the query string or the form), and any other field is refused with 422."""

    model_config = ConfigDict(extra="forbid")

    def options(self, request: Request, query: dict) -> dict:
        """``query`` (the query-string values) updated with the options given as form fields."""
        given = self.model_fields_set - {"file", "url"}
        twice = sorted(given & set(request.query_params))
        if twice:  # shaped like FastAPI's own 422s, as the schema documents them
            raise RequestValidationError([{"type": "value_error", "loc": ("body", key), "input": getattr(self, key),
                                           "msg": f"{key} given both as a form field and in the query string; "
                                                  "give it once"} for key in twice])
        return {**query, **{key: getattr(self, key) for key in given}}


class _QueryOptions(_UploadForm):
    """The query options a form may carry."""

    k: int | None = Field(None, ge=1, le=MAX_K, description=HELP["k"])
    mode: Mode | None = Field(None, description=HELP["mode"])
    metric: MetricName | None = Field(None, description=HELP["metric"])
    seed: int | None = Field(None, ge=0, le=INT64_MAX, description=HELP["seed"])
    exclude_self: bool | None = Field(None, description=HELP["exclude_self"])


class QueryForm(_QueryOptions):
    file: UploadFile = Field(description="The query image.")


class UrlQueryForm(_QueryOptions):
    url: str = Field(description="The address (http or https) of the query image, for the server to fetch.")


class DuplicatesForm(_UploadForm):
    file: UploadFile = Field(description="The image to look for.")
    threshold: str | None = Field(None, description=HELP["threshold"])


class QueryInfo(BaseModel):
    """The query image: its id when it is in the index (an uploaded copy of an indexed file too),
    its folder's name in a search by id, and for an upload its content hash
    (``GET /api/uploads/{hash}/query`` searches with it again)."""

    id: int | None
    name: str
    folder: str | None = None
    upload: str | None = None


class Result(BaseModel):
    rank: int
    id: int
    name: str
    folder: str = Field(description="The name of the folder holding the file (its class, in a "
                                    "folder-per-class collection).")
    distance: float


class QueryResponse(BaseModel):
    query: QueryInfo
    mode: Mode
    metric: MetricName
    seed: int | None = Field(None, description="The seed of a random draw (mode=random), to repeat it.")
    results: list[Result]


class Evidence(BaseModel):
    """Why a file is a duplicate: ORB inliers of one similarity transform, what it says, and how far
    the two pictures agree once aligned by it."""

    inliers: int
    matches: int
    agreement: float = Field(description="Share of the overlap's structured windows where the aligned pictures "
                             "agree (local correlation >= 0.8): about 1 for a copy, lower for another shot.")
    compared: float = Field(description="Share of the overlap that has structure to compare (plain areas are not).")
    shifted: float = Field(description="Share of those windows that disagree but show the same thing a few pixels "
                           "away (parallax, a little motion): another shot, not an edit.")
    displaced: float = Field(description="Share of those windows that agree but show their content a fraction of a "
                             "pixel or more from where the fit puts it (parallax, motion under a pixel or two).")
    rotation: int
    flipped: bool
    scale: float = Field(description="The duplicate's pixels per pixel of the kept file (the files' own pixels).")
    shown: float = Field(description="Share of the kept picture the duplicate shows (below 1: it is cropped).")
    filled: float = Field(description="Share of the duplicate's frame the kept picture fills (below 1: borders, or "
                          "more around it).")
    brightness: float
    borders: str | None = Field(None, description="'added': the duplicate is the kept picture on plain bars or "
                                "padding; 'removed': it is the kept picture without the kept file's plain borders.")
    edits: list[str]
    summary: str


class DuplicateResult(Result):
    evidence: Evidence | None = None


class DuplicatesResponse(BaseModel):
    query: QueryInfo
    metric: MetricName
    threshold: float
    preset: str | None
    results: list[DuplicateResult]


class Stats(BaseModel):
    count: int
    model: str
    layer: str | None
    dims: int
    index_type: str
    max_upload_bytes: int
    fetch_urls: bool = Field(description="Whether this server queries by an image's address "
                                         "(POST /api/query/url; lookalike serve --fetch-urls).")


class MapFolder(BaseModel):
    name: str = Field(description="The folder's base name (with a number where two share one).")
    size: int


class MapCluster(BaseModel):
    size: int
    central: list[int] = Field(description="Ids of its images nearest its centre, nearest first.")


class MapResponse(BaseModel):
    """Per image, in id order: its id, place, base name, folder (an index into ``folders``) and
    k-means cluster (an index into ``clusters``, numbered by decreasing size)."""

    generation: int = Field(description="The index generation the map is of.")
    count: int
    method: str = Field(description="How it was laid out.")
    scale: int = Field(description="Places are integers from 0 to scale (x to the right, y downwards).")
    color: str = Field(description="The colouring to start with: folder when there are several, else cluster.")
    ids: list[int]
    x: list[int]
    y: list[int]
    names: list[str]
    folder: list[int]
    folders: list[MapFolder]
    cluster: list[int]
    clusters: list[MapCluster]


class Pending(BaseModel):
    detail: str


def results(found) -> list[Result]:
    """The matches of a :class:`~lookalike.api.QueryResult` as response rows (names, never paths)."""
    return [Result(rank=m.rank, id=m.id, name=display_name(m.path), folder=folder_name(m.path),
                   distance=round(m.distance, 6)) for m in found.results]


def folder_name(path: str) -> str:
    """The name of the folder holding a file (its class in a folder-per-class collection), as valid text."""
    return display_name(os.path.dirname(path))
