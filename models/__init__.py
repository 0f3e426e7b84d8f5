"""Model bundles shipped with edge-agent (installed as the package ``edge_agent.models``)."""
