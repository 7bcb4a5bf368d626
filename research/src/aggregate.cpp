// Placeholder: aggregate queries with small-cell suppression of issue [8/8].
