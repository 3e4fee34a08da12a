"""Pipeline stages. Each module holds a stage's config dataclass, a Ray-free core, and an ``apply`` wrapper."""
