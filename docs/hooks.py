"""MkDocs hooks: pages generated from the code at build time, so they cannot drift from it.

- `<!-- cli-reference -->` becomes the help of every `arginator` command, read from the Typer app;
- `<!-- openapi -->` becomes the HTTP API rendered from the service's OpenAPI schema (paths, bodies, responses),
  and the schema itself is published as `openapi.json` beside the site.
"""

from __future__ import annotations

import json
from typing import Any

import typer

CLI_MARKER = "<!-- cli-reference -->"
OPENAPI_MARKER = "<!-- openapi -->"


def cli_reference() -> str:
    """Markdown for every command of the Typer app, by Typer's own generator (`typer ... utils docs`)."""
    from typer.cli import get_docs_for_click

    from arginator.cli import app  # the imported module: cli_models has added its commands to this app

    command = typer.main.get_command(app)
    return get_docs_for_click(obj=command, ctx=typer.Context(command), name="arginator", indent=2).strip() + "\n"


def openapi_schema() -> dict[str, Any]:
    """The service's OpenAPI schema (the app is built, no model is loaded)."""
    from arginator.serving.api.app import create_app

    return create_app().openapi()


def _schema_summary(schema: dict[str, Any]) -> str:
    if "oneOf" in schema:
        return " or ".join(_schema_summary(option) for option in schema["oneOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_schema_summary(schema.get('items', {}))}"
    if kind == "object" and "properties" in schema:
        fields = ", ".join(
            f"`{key}`{'' if key in schema.get('required', []) else '?'}: {_schema_summary(value)}"
            for key, value in schema["properties"].items()
        )
        return f"object {{{fields}}}"
    return kind + (f" ({schema['format']})" if "format" in schema else "")


def openapi_markdown(schema: dict[str, Any]) -> str:
    """Markdown: a table of every route, then each route's request body and responses."""
    rows, details = ["| method | path | summary |", "|---|---|---|"], []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            summary = operation.get("summary", "")
            rows.append(f"| `{method.upper()}` | `{path}` | {summary} |")
            lines = [f"#### `{method.upper()} {path}`", "", operation.get("description") or summary, ""]
            for parameter in operation.get("parameters", []):
                kind = _schema_summary(parameter.get("schema", {}))
                lines.append(f"- {parameter.get('in', '')} parameter `{parameter['name']}`: {kind}")
            body = operation.get("requestBody", {}).get("content", {})
            for content_type, content in body.items():
                lines.append(f"- request body `{content_type}`: {_schema_summary(content.get('schema', {}))}")
            for status, response in operation.get("responses", {}).items():
                lines.append(f"- response {status}: {response.get('description', '')}")
            details.append("\n".join(lines) + "\n")
    info = schema.get("info", {})
    head = f"Generated from the OpenAPI schema of {info.get('title', 'the service')} {info.get('version', '')}."
    return "\n".join([head, "", *rows, "", *details])


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the markers of a page with the generated reference."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if OPENAPI_MARKER in markdown:
        markdown = markdown.replace(OPENAPI_MARKER, openapi_markdown(openapi_schema()))
    return markdown


def on_files(files: Any, config: Any) -> Any:
    """Publish the raw schema with the pages (`openapi.json`), for Swagger UI, Postman or code generators."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(openapi_schema(), indent=2)))
    return files
