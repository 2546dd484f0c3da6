"""C, plan and report output, and the build folder."""
