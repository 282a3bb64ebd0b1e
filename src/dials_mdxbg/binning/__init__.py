"""Image series -> background map: mdx2's bin grid, exact integer sums, block tasks."""
