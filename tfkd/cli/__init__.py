"""The command-line tools: flags built from the library's config declarations, then one library
call each. Nothing in the library imports this package."""
