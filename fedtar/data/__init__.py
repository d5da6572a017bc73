"""A site's data as the model sees it: exams, their tokenized reports, the site, and patients' demographics."""
