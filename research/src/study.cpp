// Placeholder: the study definition and export of issue [8/8].
